"""The Forge's stages: what the kernel asks of a trainer backend (the training itself stays in
the ``forgemind_hf`` plugin, or whichever ``trainers`` backend the goal names).

- :mod:`.stages`: the base model (load or pre-train), the train request of an iteration, its
  estimate against the run's limits (budget, wall clock, tokens), and the train stage.
"""
