"""The run's server pool (forgemind_core/base/servers.py): a ``server:`` key on a backend choice starts
a model server once per run, shared by the stages that need the same one, injected into the
client's options, stopped when the run ends (also on error and KeyboardInterrupt); unknown
server backends and clients that cannot take a server fail validation with their line."""

from __future__ import annotations

import itertools
from typing import ClassVar

import pytest
from attrs import frozen
from forgemind_hookspecs import Endpoint, Verdict, collect_backends, hookimpl, make_plugin_manager

from forgemind_core import Forge

PORTS = itertools.count(18000)


class FakeServer:
    """Pretends to serve a model (a test server): no process, a made-up port."""

    name: ClassVar[str] = "fake"
    started: ClassVar[list[FakeServer]] = []

    @frozen
    class Options:
        n_ctx: int = 512

    def __init__(self, options):
        self.options = options
        self.running = False
        self.work_dir = None

    def start(self, model, ctx):
        self.running, self.work_dir, self.model = True, ctx.work_dir, model
        FakeServer.started.append(self)
        return Endpoint(base_url=f"http://127.0.0.1:{next(PORTS)}/v1", model=f"served:{model}",
                        client_defaults={"concurrency": 1, "no_such_option": 3})

    def stop(self):
        self.running = False


class RemoteKeep:
    """Keeps every example and notes where it was pointed (a test client of a served model)."""

    name: ClassVar[str] = "remote_keep"
    seen: ClassVar[list[tuple[str | None, str, int]]] = []

    @frozen
    class Options:
        model: str = "gpt-x"
        base_url: str | None = None
        concurrency: int = 8
        explode: bool = False

    def __init__(self, options):
        self.options = options

    def filter(self, examples, ctx):
        RemoteKeep.seen.append((self.options.base_url, self.options.model, self.options.concurrency))
        if self.options.explode:
            raise KeyboardInterrupt
        return [Verdict(example_id=e.id, filter=self.name, keep=True) for e in examples]


class ServerPlugin:
    @hookimpl
    def forgemind_register_servers(self, register):
        register(FakeServer)

    @hookimpl
    def forgemind_register_filters(self, register):
        register(RemoteKeep)


@pytest.fixture(autouse=True)
def _fresh():
    FakeServer.started.clear()
    RemoteKeep.seen.clear()


@pytest.fixture
def served_forge(forge_home):
    import kernel_plugins

    return Forge(home=forge_home, plugins=[kernel_plugins, ("servers", ServerPlugin())], blocked=["hf", "openai"])


def _filters(text: str) -> str:
    return "filter:\n  - backend: rules\n" + text


def _goal(colors_goal, text):
    colors_goal.write_text(colors_goal.read_text().replace("filter:\n  - backend: rules\n", _filters(text)))
    return colors_goal


TWO_CLIENTS = """\
  - {backend: remote_keep, model: tiny, server: {backend: fake, n_ctx: 256}}
  - backend: remote_keep
    model: tiny
    concurrency: 4
    server: {backend: fake, n_ctx: 256}
"""


def test_hook_forgemind_register_servers(stage_context):
    servers = collect_backends(make_plugin_manager([ServerPlugin()]), "servers")
    assert servers["fake"].cls is FakeServer
    endpoint = FakeServer(FakeServer.Options()).start("m", stage_context)
    assert endpoint.model == "served:m" and endpoint.base_url.endswith("/v1")


def test_two_stages_share_one_server_which_stops_when_the_run_ends(served_forge, colors_goal):
    goal = _goal(colors_goal, TWO_CLIENTS)
    summary = served_forge.run(goal)
    assert summary["iterations"]
    [server] = FakeServer.started  # one start for both filters, every iteration
    assert not server.running and server.model == "tiny" and server.options.n_ctx == 256
    assert server.work_dir.parent.name == "servers" and server.work_dir.is_dir()
    urls = {url for url, _, _ in RemoteKeep.seen}
    assert len(urls) == 1 and next(iter(urls)).startswith("http://127.0.0.1:")
    # the served name replaces the written one; a server's default applies unless the goal writes it
    assert {(model, n) for _, model, n in RemoteKeep.seen} == {("served:tiny", 1), ("served:tiny", 4)}
    events = served_forge.registry().events(summary["run_id"], kinds=["server.started", "server.stopped"])
    assert [e["kind"] for e in events] == ["server.started", "server.stopped"]


def test_a_different_model_or_server_option_starts_another_server(served_forge, colors_goal):
    goal = _goal(colors_goal, TWO_CLIENTS.replace("n_ctx: 256}}", "n_ctx: 128}}"))
    served_forge.run(goal)
    assert sorted(s.options.n_ctx for s in FakeServer.started) == [128, 256]
    assert not any(s.running for s in FakeServer.started)


def test_servers_stop_when_the_run_is_interrupted(served_forge, colors_goal):
    goal = _goal(colors_goal, "  - {backend: remote_keep, model: tiny, explode: true, server: {backend: fake}}\n")
    with pytest.raises(KeyboardInterrupt):
        served_forge.run(goal)
    [server] = FakeServer.started
    assert not server.running


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{backend: remote_keep, model: tiny, server: {backend: nope}}",
         "filter[1].server.backend: no server named 'nope'; installed: fake"),
        ("{backend: remote_keep, model: tiny, server: llamacpp}",
         "filter[1].server: expected a mapping with a 'backend' key"),
        ("{backend: remote_keep, model: tiny, server: {n_ctx: 2}}", "filter[1].server.backend: required"),
        ("{backend: remote_keep, server: {backend: fake}}", "filter[1].server: a server needs the model option"),
        ("{backend: rules, model: x, server: {backend: fake}}",
         "filter[1].server: this backend cannot use a server: its options have no base_url"),
        ("{backend: remote_keep, model: tiny, server: {backend: fake, n_ctx: lots}}",
         "filter[1].server.n_ctx: expected an integer"),
    ],
)
def test_validation_names_the_server_line(served_forge, colors_goal, entry, message):
    goal = _goal(colors_goal, f"  - {entry}\n")
    line = goal.read_text().splitlines().index(f"  - {entry}") + 1
    errors = [str(e) for e in served_forge.validate_goal(goal)]
    assert len(errors) == 1 and errors[0].startswith(f"{goal}:{line}: {message}"), errors


def test_a_goal_with_a_server_round_trips_through_yaml(served_forge, colors_goal):
    from forgemind_core.brain.goals import goal_to_yaml, parse_goal

    goal = served_forge.load_goal(_goal(colors_goal, TWO_CLIENTS))
    assert dict(goal.filter[1].options["server"]) == {"backend": "fake", "n_ctx": 256}
    again = parse_goal(goal_to_yaml(goal), source=goal.source, catalogue=served_forge.catalogue())
    assert again.filter == goal.filter
