"""Reading computational DAGs from networkx node-link JSON files."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Hashable

import networkx as nx

from ..errors import GraphFormatError, UnknownNodeError

__all__ = ["read_node_link", "parse_node_link", "resolve_node"]


def read_node_link(path: str | Path) -> nx.MultiDiGraph:
    """Read a directed graph, parallel edges kept, from node-link JSON.

    Parameters
    ----------
    path : str or Path
        ``"-"`` for standard input, or a file written by ``json.dump(nx.node_link_data(G), f)`` (edges under
        ``"links"`` or ``"edges"``).  A missing ``"directed"`` key is read as
        directed; ``"multigraph"`` is ignored so that repeated links are always
        kept as parallel edges, as the in-degrees of the paper count them.

    Returns
    -------
    networkx.MultiDiGraph

    Raises
    ------
    GraphFormatError
        If the file cannot be read or parsed, is not node-link data, says
        ``"directed": false``, or has a link to a node it does not list.

    Examples
    --------
    >>> import json, tempfile, os
    >>> data = {"nodes": [{"id": "x"}, {"id": "o"}],
    ...         "links": [{"source": "x", "target": "o"}, {"source": "x", "target": "o"}]}
    >>> with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
    ...     json.dump(data, f)
    >>> read_node_link(f.name).in_degree("o")
    2
    >>> os.unlink(f.name)
    """
    if str(path) == "-":
        try:
            text = sys.stdin.read()
        except UnicodeDecodeError:
            raise GraphFormatError("standard input: not text; expected node-link JSON") from None
        return parse_node_link(text, "standard input")
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise GraphFormatError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise GraphFormatError(f"{path}: is a folder; give a node-link JSON file") from None
    except OSError as exc:
        raise GraphFormatError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise GraphFormatError(f"{path}: not a text file; expected node-link JSON") from None
    return parse_node_link(text, str(path))


def parse_node_link(text: str, where: str = "graph") -> nx.MultiDiGraph:
    """Parse node-link JSON text as :func:`read_node_link` reads a file.

    ``where`` names the source in error messages.

    Examples
    --------
    >>> parse_node_link('{"nodes": [{"id": "x"}, {"id": "o"}], "links": [{"source": "x", "target": "o"}]}').number_of_edges()
    1
    >>> parse_node_link("[" * 100000, "deep.json")
    Traceback (most recent call last):
    ...
    pathstats.errors.GraphFormatError: deep.json: JSON nested too deeply to be a node-link graph
    """
    try:
        return _graph_from_data(json.loads(text), where)
    except json.JSONDecodeError as exc:
        raise GraphFormatError(f"{where}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except RecursionError:  # the decoder, or node ids nested as deep as the decoder allows
        raise GraphFormatError(f"{where}: JSON nested too deeply to be a node-link graph") from None


def _graph_from_data(data: Any, where: str) -> nx.MultiDiGraph:
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), list):
        raise GraphFormatError(f"{where}: not node-link JSON (expected an object with a \"nodes\" list)")
    edges_key = next((key for key in ("links", "edges") if key in data), None)
    if edges_key is None or not isinstance(data[edges_key], list):
        raise GraphFormatError(f"{where}: not node-link JSON (expected a \"links\" or \"edges\" list)")
    if data.get("directed", True) is not True:
        raise GraphFormatError(f"{where}: the graph is undirected (\"directed\": false); a computational DAG needs directed edges")
    # JSON has no tuples: node ids written from tuples come back as lists
    nodes = [_with_hashable_ids(item, ("id",)) for item in data["nodes"]]
    links = [_with_hashable_ids(item, ("source", "target")) for item in data[edges_key]]
    data = {**data, "nodes": nodes, edges_key: links, "directed": True, "multigraph": True}
    try:
        G = nx.node_link_graph(data, directed=True, multigraph=True, edges=edges_key)
    except (KeyError, TypeError, AttributeError, ValueError, nx.NetworkXError) as exc:
        raise GraphFormatError(f"{where}: malformed node-link JSON ({type(exc).__name__}: {exc})") from None
    declared = len(data["nodes"])
    if G.number_of_nodes() != declared:
        listed = {item.get("id") for item in nodes if isinstance(item, dict)}
        unknown = next((v for v in G if v not in listed), None)
        if unknown is not None:
            raise GraphFormatError(f"{where}: a link names node {unknown!r}, which is not in \"nodes\"")
        raise GraphFormatError(f"{where}: \"nodes\" lists the same id twice")
    return G


def _with_hashable_ids(item: Any, keys: tuple) -> Any:
    if not isinstance(item, dict):
        return item
    return {**item, **{key: _hashable(item[key]) for key in keys if key in item}}


def _hashable(value: Any) -> Hashable:
    return tuple(map(_hashable, value)) if isinstance(value, list) else value


def resolve_node(G: Any, name: str) -> Hashable:
    """Find the node a command-line argument names.

    Parameters
    ----------
    G : networkx graph
        The graph.
    name : str
        Compared with ``str(node)`` of every node, so ``"3"`` finds node ``3``.

    Returns
    -------
    hashable
        The node.

    Raises
    ------
    UnknownNodeError
        If no node or more than one node prints as ``name``.

    Examples
    --------
    >>> import networkx as nx
    >>> resolve_node(nx.DiGraph([(1, 2)]), "2")
    2
    """
    matches = [v for v in G if str(v) == name]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise UnknownNodeError(f"node name {name!r} is ambiguous: it matches {matches!r}")
    sinks = [v for v in G if G.out_degree(v) == 0]
    raise UnknownNodeError(f"no node named {name!r}; the graph's sinks are {sinks[:10]!r}")
