"""`pathstats dag` answers as SPEC section 5 says."""

from __future__ import annotations

import json
from fractions import Fraction

import networkx as nx

from pathstats.cli import main
from pathstats.dag.enumeration import brute_force
from pathstats.dag.generators import EXAMPLES, conv1d_dag


def test_json_output_follows_the_spec(tmp_path, capsys):
    G, o = conv1d_dag(6, [dict(kernel=3, stride=2, padding=1, channels=2)], padding_mode="replicate")
    path = tmp_path / "g.json"
    path.write_text(json.dumps(nx.node_link_data(G, edges="edges")))
    assert main(["dag", str(path), "--output", o, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["output"] == "o" and result["lemma7_total"] == "1" and result["symmetric"] is False
    oracle = brute_force(G, o)
    assert [tuple(item["node"]) for item in result["inputs"]] == list(oracle)
    for item in result["inputs"]:
        total, count, degrees = oracle[tuple(item["node"])]
        assert Fraction(item["path_sum"]) == total and int(item["path_count"]) == count
        assert {tuple((int(d), m) for d, m in entry["degrees"].items()): int(entry["paths"]) for entry in item["path_degrees"]} == dict(degrees)


def test_table_names_lemma7_and_symmetry(capsys):
    assert main(["dag", "--example", "fc"]) == 0
    out = capsys.readouterr().out
    assert "sum_x S(x) = 1" in out and "(S) holds" in out and "1/4" in out


def test_every_example_runs(capsys):
    for name in EXAMPLES:
        assert main(["dag", "--example", name, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["lemma7_total"] == "1"
