"""Every bad input is refused: with a typed exception in Python, one line and
exit status 2 on the command line."""

from __future__ import annotations

import json
import subprocess
import sys

import networkx as nx
import pytest

from pathstats import GraphFormatError, NotADAGError, PathstatsError, UnknownNodeError, analyze_dag, path_sums, weighted_path_sums
from pathstats.cli import main
from pathstats.dag.graphio import read_node_link


def test_cycle_is_refused_even_away_from_the_output():
    G = nx.DiGraph([("x", "o"), ("a", "b"), ("b", "c"), ("c", "a")])
    with pytest.raises(NotADAGError, match="directed cycle"):
        path_sums(G, "o")
    assert issubclass(NotADAGError, ValueError)


def test_unknown_output_is_refused_with_the_sinks():
    with pytest.raises(UnknownNodeError, match="sinks are \\['o'\\]"):
        path_sums(nx.DiGraph([("x", "o")]), "nope")


def test_undirected_graph_is_refused():
    with pytest.raises(GraphFormatError, match="directed"):
        path_sums(nx.Graph([("x", "o")]), "o")
    with pytest.raises(GraphFormatError):
        path_sums({"x": "o"}, "o")


def test_missing_attribute_and_bad_factor_type_are_refused():
    G = nx.DiGraph([("x", "o")])
    with pytest.raises(GraphFormatError, match="attribute 'var'"):
        weighted_path_sums(G, "o", edge_factor="var")
    with pytest.raises(GraphFormatError, match="attribute 'gain'"):
        weighted_path_sums(G, "o", node_factor="gain")
    with pytest.raises(UnknownNodeError):
        weighted_path_sums(G, "o", node_factor={})
    with pytest.raises(TypeError):
        weighted_path_sums(G, "o", node_factor=3)


def _write(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return str(path)


def _node_link(nodes, links, **extra):
    return json.dumps({"nodes": [{"id": v} for v in nodes], "links": [{"source": u, "target": v} for u, v in links], **extra})


BAD_FILES = {
    "missing": (None, "no such file"),
    "not-json": ("{nodes: [", "invalid JSON at line 1"),
    "binary": (b"\xff\xfe\x00\x01", "not a text file"),
    "not-node-link": ('{"a": 1}', "not node-link JSON"),
    "list": ("[1, 2]", "not node-link JSON"),
    "no-links": ('{"nodes": []}', "\"links\" or \"edges\""),
    "undirected": (_node_link(["x", "o"], [("x", "o")], directed=False), "undirected"),
    "unlisted-node": (_node_link(["x", "o"], [("x", "o"), ("y", "o")]), "names node 'y'"),
    "duplicate-id": (_node_link(["x", "x", "o"], [("x", "o")]), "same id twice"),
    "bad-link": ('{"nodes": [{"id": "x"}], "links": [{"from": "x"}]}', "malformed"),
    "bad-node": ('{"nodes": [3], "links": []}', "malformed"),
    "cycle": (_node_link(["a", "b", "o"], [("a", "b"), ("b", "a"), ("a", "o")]), "directed cycle"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_cli_refuses_bad_files_with_one_line_and_status_2(case, tmp_path, capsys):
    content, message = BAD_FILES[case]
    path = str(tmp_path / "absent.json") if content is None else _write(tmp_path, "g.json", content)
    assert main(["dag", path, "--output", "o"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("pathstats dag: error: ")
    assert message in lines[0]


def test_cli_refuses_unknown_ambiguous_and_missing_output(tmp_path, capsys):
    path = _write(tmp_path, "g.json", _node_link([1, "1", "o", "p"], [(1, "o"), ("1", "p")]))
    for argv, message in [
        (["dag", path, "--output", "zz"], "no node named 'zz'"),
        (["dag", path, "--output", "1"], "ambiguous"),
        (["dag", path], "2 sinks"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and message in err[0], err


def test_cli_usage_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["dag"])
    assert exit_info.value.code == 2
    assert len(capsys.readouterr().err.splitlines()) == 1


def test_reading_round_trips_tuple_nodes_and_parallel_edges(tmp_path):
    from pathstats.dag.generators import conv1d_dag

    G, o = conv1d_dag(5, [dict(kernel=3, padding=1)], padding_mode="reflect")
    path = _write(tmp_path, "g.json", json.dumps(nx.node_link_data(G, edges="links")))
    H = read_node_link(path)
    assert sorted(H.edges()) == sorted(G.edges())
    assert path_sums(H, o) == path_sums(G, o)


def test_installed_command_never_prints_a_traceback(tmp_path):
    path = _write(tmp_path, "g.json", "[")
    result = subprocess.run([sys.executable, "-m", "pathstats", "dag", path], capture_output=True, text=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1


def test_every_error_is_a_pathstats_error():
    for error in (NotADAGError, UnknownNodeError, GraphFormatError):
        assert issubclass(error, PathstatsError)
