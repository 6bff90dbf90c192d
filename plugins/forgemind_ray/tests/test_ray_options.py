"""The ray executor's registration and the resource request each task is submitted with (the
end-to-end runs on a local Ray instance are in tests/test_candidates_ray.py)."""

from __future__ import annotations

from forgemind_ray import RayExecutor, forgemind_register_executors


def test_registers_the_ray_executor():
    got: list[type] = []
    forgemind_register_executors(register=got.append)
    assert got == [RayExecutor] and RayExecutor.name == "ray"


def test_tasks_ask_for_their_resources_and_retry_dead_workers_only():
    options = RayExecutor(RayExecutor.Options(num_cpus=2, num_gpus=1, memory_gb=1.5, max_retries=4)).remote_options()
    assert options == {"num_cpus": 2, "num_gpus": 1, "memory": int(1.5 * 1024**3), "max_retries": 4,
                       "retry_exceptions": False}
    assert "memory" not in RayExecutor().remote_options()
