"""Exact path-dependent TreeSHAP for LightGBM boosters, vectorised in numpy.

`TreeShapExplainer(booster).contributions(X)` returns the same values as
`booster.predict(X, pred_contrib=True)` (LightGBM's `Tree::TreeSHAP`, covers = data counts)
at a fraction of the CPU cost, for single-output models without linear trees.

Why it is exact and fast. For a leaf l with unique path features P_l (d = |P_l|), LightGBM's
recursion adds to each i in P_l

    v_l * (o_i - z_i) * sum_{S ⊆ P_l \\ {i}} |S|! (d - |S| - 1)! / d! * prod_S o_j * prod_rest z_j

where z_j is the product of child/parent data counts over the path nodes splitting on j and
o_j ∈ {0, 1} says whether the row follows the path at every such node. The row enters only
through the bits o_j, so every value is tabulated once per bit pattern at construction. Leaves
are grouped into blocks (an internal node q and a connected set of internal nodes below it):
a block's table is indexed by the mismatch bits of the features on the path to q plus the
go-left decisions of its nodes, and holds the summed contributions of all leaves hanging off
those nodes. Explaining a row is then: evaluate every split once, form each block's index,
gather its table row and add it into the feature columns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np

K_ZERO_THRESHOLD = 1e-35  # LightGBM's kZeroThreshold: |x| <= this counts as zero
_INT_LIMIT = 2.0**31  # static_cast<int> of larger values is not a valid category

_MISSING_NONE, _MISSING_ZERO, _MISSING_NAN = 0, 1, 2
_MISSING_TYPES = {"None": _MISSING_NONE, "Zero": _MISSING_ZERO, "NaN": _MISSING_NAN}


@dataclass
class _Node:
    """An internal node of one tree, with global index `gid` among all internal nodes."""

    gid: int
    feature: int
    count: float
    left: _Node | _Leaf
    right: _Node | _Leaf


@dataclass
class _Leaf:
    value: float
    count: float


@dataclass
class _Split:
    """How to evaluate one internal node's go-left decision (LightGBM `Tree::Decision`)."""

    feature: int
    threshold: float
    categorical: bool
    default_left: bool
    missing_type: int
    categories: np.ndarray | None = None


@dataclass
class _TermGroup:
    """Blocks whose index has `k` terms: index = OR_t (decision[node[t]] XOR flip[t]) * weight[t].

    Arrays are (k, n_blocks, 1), so each row of terms is one contiguous gather."""

    node: np.ndarray
    flip: np.ndarray
    weight: np.ndarray


@dataclass
class _Plan:
    """Flat arrays describing how to turn split decisions into contributions."""

    groups: list[_TermGroup]  # blocks in order of their group
    # column c's values: table[col_base[c] + index[col_block[c]]]; each block's table is
    # stored feature-major, so one column's lookups stay within 2**bits consecutive values
    col_block: np.ndarray
    col_base: np.ndarray
    col_bounds: np.ndarray  # columns sorted by feature: feature k's run is bounds[k]:bounds[k+1]
    col_feature: np.ndarray  # feature of each run
    table: np.ndarray
    direct: list[_DirectLeaf] = field(default_factory=list)


@dataclass
class _DirectLeaf:
    """A leaf too deep to tabulate: its values are computed per row (same formula)."""

    nodes: np.ndarray  # global internal node ids on the path
    go_left: np.ndarray  # direction taken at each of those nodes
    slot: np.ndarray  # position of each node's feature in `features`
    features: np.ndarray
    zero: np.ndarray
    value: float


def shapley_terms(ones: np.ndarray, zeros: np.ndarray, value: float) -> np.ndarray:
    """Path-dependent TreeSHAP contributions of one leaf for many one-fraction patterns.

    `ones` (m, d) holds o_j per pattern, `zeros` (d,) the z_j; returns (m, d) contributions
    v * (o_i - z_i) * sum_k k!(d-k-1)!/d! * e_k, where e_k is the coefficient of t^k in
    prod_{j != i} (z_j + o_j t), i.e. the Shapley-weighted sum over subsets of the others.
    """
    m, d = ones.shape
    weights = np.array(
        [math.factorial(k) * math.factorial(d - k - 1) / math.factorial(d) for k in range(d)]
    )
    coef = np.zeros((m, d, d))  # [pattern, i, power of t]
    coef[:, :, 0] = 1.0
    for j in range(d):
        grown = coef * zeros[j]
        grown[:, :, 1:] += coef[:, :, :-1] * ones[:, j, None, None]
        grown[:, j, :] = coef[:, j, :]  # feature i = j is left out of its own product
        coef = grown
    return value * (ones - zeros) * (coef @ weights)


class TreeShapExplainer:
    """Exact LightGBM `pred_contrib` values (path-dependent TreeSHAP), computed faster.

    Built once from a booster; `contributions` then explains any number of rows. `block_bits`
    bounds the table index width per block (tables have 2**bits rows), trading memory for
    fewer lookups per row (12: ~65 MB for 220 trees of 15 leaves); if the tables would exceed
    `max_table_mb`, smaller blocks are used. Leaves deeper than `max_bits` unique features
    are computed per row instead.
    """

    def __init__(
        self,
        booster: lgb.Booster,
        block_bits: int = 12,
        max_bits: int = 14,
        chunk_rows: int = 256,
        max_table_mb: float = 512.0,
    ) -> None:
        dump = booster.dump_model()
        if dump.get("num_class", 1) != 1 or dump.get("num_tree_per_iteration", 1) != 1:
            raise ValueError(
                "TreeShapExplainer supports single-output models only "
                f"(num_class={dump.get('num_class')}); multiclass is not supported"
            )
        if dump.get("average_output", False):
            raise ValueError("TreeShapExplainer does not support averaged output (boosting='rf')")
        self.n_features = int(dump["max_feature_idx"]) + 1
        self.block_bits = block_bits
        self.max_bits = max(max_bits, block_bits)
        self.chunk_rows = chunk_rows
        self.splits: list[_Split] = []
        self._nodes: list[_Node] = []
        self.expected_value = 0.0
        trees = []
        for info in dump["tree_info"]:
            root = self._parse(info["tree_structure"])
            if isinstance(root, _Leaf):
                self.expected_value += root.value
                continue
            self.expected_value += self._expected(root, root.count)
            trees.append(root)
        self._prepare_splits()
        self.plan = self._plan(trees)
        while self.plan.table.nbytes > max_table_mb * 1e6 and self.block_bits > 4:
            self.block_bits -= 2
            self.plan = self._plan(trees)

    # ---- parsing ---------------------------------------------------------------------

    def _parse(self, node: dict[str, Any]) -> _Node | _Leaf:
        if "leaf_coeff" in node or "leaf_const" in node:
            raise ValueError("TreeShapExplainer does not support linear trees (linear_tree=True)")
        if "split_index" not in node:
            return _Leaf(float(node["leaf_value"]), float(node.get("leaf_count", 0)))
        categorical = node["decision_type"] == "=="
        if not categorical and node["decision_type"] != "<=":
            raise ValueError(f"unknown decision_type {node['decision_type']!r}")
        categories = None
        if categorical:
            categories = np.array(
                [int(c) for c in str(node["threshold"]).split("||")], dtype=np.int64
            )
        split = _Split(
            feature=int(node["split_feature"]),
            threshold=float(node["threshold"]) if not categorical else 0.0,
            categorical=categorical,
            default_left=bool(node["default_left"]),
            missing_type=_MISSING_TYPES[node["missing_type"]],
            categories=categories,
        )
        left = self._parse(node["left_child"])
        right = self._parse(node["right_child"])
        self.splits.append(split)
        parsed = _Node(len(self._nodes), split.feature, float(node["internal_count"]), left, right)
        self._nodes.append(parsed)
        return parsed

    @staticmethod
    def _expected(node: _Node | _Leaf, total: float) -> float:
        """LightGBM `Tree::ExpectedValue`: leaf values weighted by data count."""
        if isinstance(node, _Leaf):
            return node.count / total * node.value
        return TreeShapExplainer._expected(node.left, total) + TreeShapExplainer._expected(
            node.right, total
        )

    @staticmethod
    def _kind(split: _Split) -> int:
        """Decision kind: 0 `x <= t` (NaN as 0, or NaN goes right), 1 `not x > t` (NaN goes
        left), 2 zero as missing, 3 categorical. Nodes are renumbered so kinds are contiguous."""
        if split.categorical:
            return 3
        if split.missing_type == _MISSING_ZERO:
            return 2
        return 1 if split.missing_type == _MISSING_NAN and split.default_left else 0

    def _prepare_splits(self) -> None:
        order = sorted(range(len(self.splits)), key=lambda g: self._kind(self.splits[g]))
        splits = [self.splits[g] for g in order]
        nodes = [self._nodes[g] for g in order]
        for gid, node in enumerate(nodes):
            node.gid = gid
        self.splits, self._nodes = splits, nodes
        kinds = np.array([self._kind(s) for s in splits], dtype=np.int64)
        self._bounds = np.searchsorted(kinds, np.arange(5))  # kind k is bounds[k]:bounds[k+1]
        # rows of the source matrix: [x with NaN kept, x with NaN as 0] (tiny |x| as 0 in both)
        nan_as_zero = np.array(
            [s.missing_type != _MISSING_NAN and not s.categorical for s in splits], dtype=bool
        )
        self._src = np.array([s.feature for s in splits], dtype=np.intp)
        self._src[nan_as_zero] += self.n_features
        self._thr = np.array([s.threshold for s in splits])[:, None]
        self._zero_default = np.array(
            [s.default_left for s in splits[self._bounds[2] : self._bounds[3]]], dtype=bool
        )[:, None]
        # categorical nodes: one membership table, node k's categories at offset[k] + code
        luts = []
        for s in splits[self._bounds[3] :]:
            lut = np.zeros(int(s.categories.max(initial=0)) + 1, dtype=bool)
            lut[s.categories[s.categories >= 0]] = True
            luts.append(lut)
        sizes = np.array([len(lut) for lut in luts], dtype=np.int64)
        self._cat_size = sizes[:, None]
        self._cat_offset = (np.cumsum(sizes) - sizes)[:, None]
        self._cat_lut = np.concatenate(luts) if luts else np.zeros(0, dtype=bool)

    # ---- planning: blocks and their tables -------------------------------------------

    def _plan(self, trees: list[_Node]) -> _Plan:
        blocks: list[tuple[list[tuple[int, bool, int]], list[int], np.ndarray, np.ndarray]] = []
        direct: list[_DirectLeaf] = []
        for root in trees:
            self._cut(root, [], [], blocks, direct)
        blocks.sort(key=lambda blk: len(blk[0]) + len(blk[1]))  # by number of index terms
        by_size: dict[int, list[list[tuple[int, bool, int]]]] = {}
        columns: list[tuple[int, int, int]] = []  # (feature, block, start of its values)
        tables = []
        base = 0
        for b, (prefix, snodes, feats, table) in enumerate(blocks):
            # terms: mismatch on the path to q (decision != go_left, repeated features share
            # a bit), then the go-left decisions of the block's own nodes
            terms = list(prefix)
            dq = 1 + max((p for _, _, p in prefix), default=-1)
            terms += [(gid, False, dq + k) for k, gid in enumerate(snodes)]
            by_size.setdefault(len(terms), []).append(terms)
            size = table.shape[0]
            columns.extend((int(f), b, base + k * size) for k, f in enumerate(feats))
            tables.append(table.T.ravel())
            base += table.size
        groups = []
        for size in sorted(by_size):
            arr = np.array(by_size[size], dtype=np.int64).transpose(1, 0, 2)  # (k, blocks, 3)
            groups.append(
                _TermGroup(
                    node=arr[:, :, 0].astype(np.intp),
                    flip=arr[:, :, 1, None].astype(bool),
                    weight=np.left_shift(1, arr[:, :, 2, None]).astype(np.int64),
                )
            )
        columns.sort()
        col_feature_all = np.array([c[0] for c in columns], dtype=np.intp)
        starts = np.flatnonzero(np.r_[True, col_feature_all[1:] != col_feature_all[:-1]])
        return _Plan(
            groups=groups,
            col_block=np.array([c[1] for c in columns], dtype=np.intp),
            col_base=np.array([c[2] for c in columns], dtype=np.intp)[:, None],
            col_bounds=np.r_[starts, len(columns)],
            col_feature=col_feature_all[starts] if len(columns) else col_feature_all,
            table=np.concatenate(tables) if tables else np.zeros(0),
            direct=direct,
        )

    def _cut(
        self,
        q: _Node,
        prefix: list[tuple[_Node, bool]],
        _unused: list,
        blocks: list,
        direct: list[_DirectLeaf],
    ) -> None:
        """Make a block rooted at q (recursing for the subtrees it leaves out)."""
        # unique features of the path to q, by first appearance
        pos: dict[int, int] = {}
        for node, _ in prefix:
            pos.setdefault(node.feature, len(pos))
        dq = len(pos)
        room = self.block_bits - dq
        if room < 1:
            if dq + 1 > self.max_bits:
                self._direct(q, prefix, direct)
                return
            room = 1
        # grow a connected set of internal nodes below q, breadth first
        chosen: list[_Node] = []
        frontier = [q]
        while frontier and len(chosen) < room:
            node = frontier.pop(0)
            chosen.append(node)
            frontier.extend(c for c in (node.left, node.right) if isinstance(c, _Node))
        chosen_ids = {id(n) for n in chosen}
        bit = {id(n): dq + k for k, n in enumerate(chosen)}
        nbits = dq + len(chosen)
        idx = np.arange(1 << nbits, dtype=np.int64)
        prefix_terms = [(n.gid, go_left, pos[n.feature]) for n, go_left in prefix]

        # leaves hanging off chosen nodes, and subtrees (internal children) left for later
        covered: list[tuple[_Leaf, list[tuple[_Node, bool]]]] = []
        later: list[tuple[_Node, list[tuple[_Node, bool]]]] = []

        def walk(node: _Node, path: list[tuple[_Node, bool]]) -> None:
            for child, go_left in ((node.left, True), (node.right, False)):
                p = [*path, (node, go_left)]
                if isinstance(child, _Leaf):
                    covered.append((child, p))
                elif id(child) in chosen_ids:
                    walk(child, p)
                else:
                    later.append((child, p))

        walk(q, list(prefix))
        feats_all: dict[int, int] = {}
        contrib_parts = []
        for leaf, path in covered:
            lpos = dict(pos)
            for node, _ in path[len(prefix) :]:
                lpos.setdefault(node.feature, len(lpos))
            d = len(lpos)
            zero = np.ones(d)
            for node, go_left in path:
                child = node.left if go_left else node.right
                zero[lpos[node.feature]] *= child.count / node.count
            # mismatch mask of the leaf for every block index
            mask = idx & ((1 << dq) - 1)
            for node, go_left in path[len(prefix) :]:
                went_left = (idx >> bit[id(node)]) & 1
                mismatch = went_left != int(go_left)
                mask = mask | (mismatch.astype(np.int64) << lpos[node.feature])
            patterns = np.arange(1 << d, dtype=np.int64)
            ones = 1.0 - ((patterns[:, None] >> np.arange(d)) & 1)
            leaf_table = shapley_terms(ones, zero, leaf.value)
            feats = sorted(lpos, key=lpos.get)
            for f in feats:
                feats_all.setdefault(f, len(feats_all))
            contrib_parts.append((feats, leaf_table[mask]))
        table = np.zeros((1 << nbits, len(feats_all)))
        for feats, values in contrib_parts:
            cols = [feats_all[f] for f in feats]
            table[:, cols] += values
        features = np.array(sorted(feats_all, key=feats_all.get), dtype=np.int64)
        blocks.append((prefix_terms, [n.gid for n in chosen], features, table))
        for child, path in later:
            self._cut(child, path, [], blocks, direct)

    def _direct(
        self, q: _Node, prefix: list[tuple[_Node, bool]], direct: list[_DirectLeaf]
    ) -> None:
        """Leaves under q whose tables would be too large: evaluate the formula per row."""
        stack: list[tuple[_Node | _Leaf, list[tuple[_Node, bool]]]] = [(q, prefix)]
        while stack:
            node, path = stack.pop()
            if isinstance(node, _Node):
                stack.append((node.left, [*path, (node, True)]))
                stack.append((node.right, [*path, (node, False)]))
                continue
            lpos: dict[int, int] = {}
            for n, _ in path:
                lpos.setdefault(n.feature, len(lpos))
            zero = np.ones(len(lpos))
            for n, go_left in path:
                child = n.left if go_left else n.right
                zero[lpos[n.feature]] *= child.count / n.count
            direct.append(
                _DirectLeaf(
                    nodes=np.array([n.gid for n, _ in path], dtype=np.intp),
                    go_left=np.array([g for _, g in path], dtype=bool),
                    slot=np.array([lpos[n.feature] for n, _ in path], dtype=np.intp),
                    features=np.array(sorted(lpos, key=lpos.get), dtype=np.intp),
                    zero=zero,
                    value=node.value,
                )
            )

    # ---- explaining ------------------------------------------------------------------

    def decisions(self, XT: np.ndarray) -> np.ndarray:
        """Go-left decision of every internal node (LightGBM `Tree::Decision`) for rows given
        as columns of XT (n_features, n): bool (n_nodes, n), rows contiguous for fast gathers."""
        xz = np.where(np.abs(XT) <= K_ZERO_THRESHOLD, 0.0, XT)  # NaN stays NaN
        source = np.concatenate([xz, np.where(np.isnan(xz), 0.0, xz)])
        values = source[self._src]
        b = self._bounds
        left = np.empty(values.shape, dtype=bool)
        np.less_equal(values[: b[1]], self._thr[: b[1]], out=left[: b[1]])  # NaN: right
        np.greater(values[b[1] : b[2]], self._thr[b[1] : b[2]], out=left[b[1] : b[2]])
        np.logical_not(left[b[1] : b[2]], out=left[b[1] : b[2]])  # NaN: left
        if b[3] > b[2]:  # zero (or NaN, read as zero) goes the default way
            v = values[b[2] : b[3]]
            left[b[2] : b[3]] = np.where(v == 0.0, self._zero_default, v <= self._thr[b[2] : b[3]])
        if b[4] > b[3]:
            x = values[b[3] : b[4]]
            with np.errstate(invalid="ignore"):
                valid = (x > -1.0) & (x < _INT_LIMIT)  # NaN, negatives and huge values go right
            code = np.where(valid, x, 0.0).astype(np.int64)  # truncation, like static_cast<int>
            inside = valid & (code < self._cat_size)
            member = self._cat_lut[self._cat_offset + np.where(inside, code, 0)]
            np.logical_and(inside, member, out=left[b[3] : b[4]])
        return left

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Per-row contributions (n, n_features + 1), last column the expected value.

        Equal to `booster.predict(X, pred_contrib=True)`; X is float64 with NaN for missing
        and categorical columns as integer codes, as LightGBM receives them.
        """
        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"expected a 2-d array with {self.n_features} columns, got {X.shape}")
        out = np.zeros((X.shape[0], self.n_features + 1))
        out[:, -1] = self.expected_value
        p = self.plan
        n = max(1, min(self.chunk_rows, X.shape[0]))
        # buffers reused across chunks (fresh large arrays would page-fault every time)
        work = {
            "index": np.empty((sum(g.node.shape[1] for g in p.groups), n), dtype=np.int64),
            "flat": np.empty((len(p.col_block), n), dtype=np.intp),
            "values": np.empty((len(p.col_block), n)),
            "totals": np.empty((len(p.col_feature), n)),
        }
        for start in range(0, X.shape[0], n):
            rows = slice(start, start + n)
            self._explain_chunk(X[rows], out[rows], work)
        return out

    def _explain_chunk(self, X: np.ndarray, out: np.ndarray, work: dict[str, np.ndarray]) -> None:
        p = self.plan
        n = X.shape[0]
        dec = self.decisions(np.ascontiguousarray(X.T))
        if len(p.col_block):
            index, flat, values, totals = (
                work[k][:, :n] for k in ("index", "flat", "values", "totals")
            )
            start = 0
            for g in p.groups:
                k, blocks = g.node.shape
                bits = dec[g.node.ravel()].reshape(k, blocks, n) ^ g.flip
                np.bitwise_or.reduce(bits * g.weight, axis=0, out=index[start : start + blocks])
                start += blocks
            np.take(index, p.col_block, axis=0, out=flat)
            flat += p.col_base
            p.table.take(flat, mode="clip", out=values)  # clip: no bounds checking pass
            for k in range(len(p.col_feature)):
                np.sum(values[p.col_bounds[k] : p.col_bounds[k + 1]], axis=0, out=totals[k])
            out[:, p.col_feature] += totals.T
        for leaf in p.direct:
            match = dec[leaf.nodes] == leaf.go_left[:, None]
            ones = np.ones((n, len(leaf.features)))
            for k, slot in enumerate(leaf.slot):
                ones[:, slot] *= match[k]
            out[:, leaf.features] += shapley_terms(ones, leaf.zero, leaf.value)
