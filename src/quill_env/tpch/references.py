"""Known rewrites of the TPC-H templates in SQLite: the candidate references of the ``tpch`` suite.

Each candidate is an action template with the same ``:placeholders`` as its query template:
``CREATE INDEX`` statements (foreign-key and filter indexes), then either the query unchanged
or a rewrite (decorrelation of a correlated subquery, ``EXISTS`` to ``IN``, ``NOT EXISTS`` to
``NOT IN`` over a ``NOT NULL`` key). None of them is trusted: a candidate becomes a task's
reference only when the environment verifies it on every variant and it reaches the acceptance
tier (``scripts/tpch_tasks.py``); a template where none does ships with ``"reference": null``.
"""

from __future__ import annotations

from dataclasses import dataclass

from quill_env.tpch.templates import TEMPLATES


@dataclass(frozen=True)
class Rewrite:
    """One candidate reference of a template.

    Args:
        name: short label (what it does).
        patterns: the optimization pattern tags it exercises.
        indexes: ``CREATE INDEX`` statements that come first.
        query: the rewritten query template; ``None`` keeps the original query.
    """

    name: str
    patterns: tuple[str, ...]
    indexes: tuple[str, ...] = ()
    query: str | None = None

    def action(self, template: int) -> str:
        """The action template (indexes, then the query) for query number ``template``."""
        return ";\n".join([*self.indexes, self.query or TEMPLATES[template]])


def _ix(name: str, table: str, *columns: str) -> str:
    return f"CREATE INDEX {name} ON {table} ({', '.join(columns)})"


LI_PART = _ix("li_partkey", "lineitem", "l_partkey")
LI_SUPP = _ix("li_suppkey", "lineitem", "l_suppkey")
LI_SHIP = _ix("li_shipdate", "lineitem", "l_shipdate")
LI_RECEIPT = _ix("li_receiptdate", "lineitem", "l_receiptdate")
ORD_CUST = _ix("ord_custkey", "orders", "o_custkey")
ORD_DATE = _ix("ord_orderdate", "orders", "o_orderdate")
PS_SUPP = _ix("ps_suppkey", "partsupp", "ps_suppkey")
SUPP_NATION = _ix("supp_nationkey", "supplier", "s_nationkey")
CUST_NATION = _ix("cust_nationkey", "customer", "c_nationkey")
PART_SIZE = _ix("part_size", "part", "p_size")

Q2_DECORRELATED = """SELECT s_acctbal, s_name, n_name, p_partkey, p_mfgr, s_address, s_phone, s_comment
FROM part, supplier, partsupp, nation, region, (
    SELECT ps_partkey AS min_partkey, min(ps_supplycost) AS min_cost
    FROM partsupp, supplier, nation, region
    WHERE s_suppkey = ps_suppkey AND s_nationkey = n_nationkey AND n_regionkey = r_regionkey
      AND r_name = :region
    GROUP BY ps_partkey) AS region_min
WHERE p_partkey = ps_partkey AND s_suppkey = ps_suppkey AND p_size = :size AND p_type LIKE :type
  AND s_nationkey = n_nationkey AND n_regionkey = r_regionkey AND r_name = :region
  AND min_partkey = p_partkey AND ps_supplycost = min_cost
ORDER BY s_acctbal DESC, n_name, s_name, p_partkey
LIMIT 100"""

Q4_IN = """SELECT o_orderpriority, count(*) AS order_count
FROM orders
WHERE o_orderdate >= :date AND o_orderdate < :date_end
  AND o_orderkey IN (SELECT l_orderkey FROM lineitem WHERE l_commitdate < l_receiptdate)
GROUP BY o_orderpriority
ORDER BY o_orderpriority"""

Q17_DECORRELATED = """SELECT sum(l_extendedprice) / 7.0 AS avg_yearly
FROM lineitem, part, (
    SELECT l_partkey AS agg_partkey, 0.2 * avg(l_quantity) AS agg_quantity
    FROM lineitem GROUP BY l_partkey) AS part_agg
WHERE p_partkey = l_partkey AND agg_partkey = l_partkey AND p_brand = :brand
  AND p_container = :container AND l_quantity < agg_quantity"""

Q17_DECORRELATED_FILTERED = """SELECT sum(l_extendedprice) / 7.0 AS avg_yearly
FROM lineitem, part, (
    SELECT l_partkey AS agg_partkey, 0.2 * avg(l_quantity) AS agg_quantity
    FROM lineitem
    WHERE l_partkey IN (SELECT p_partkey FROM part WHERE p_brand = :brand AND p_container = :container)
    GROUP BY l_partkey) AS part_agg
WHERE p_partkey = l_partkey AND agg_partkey = l_partkey AND p_brand = :brand
  AND p_container = :container AND l_quantity < agg_quantity"""

Q20_DECORRELATED = """SELECT s_name, s_address
FROM supplier, nation
WHERE s_suppkey IN (
    SELECT ps_suppkey
    FROM partsupp, (
        SELECT l_partkey AS agg_partkey, l_suppkey AS agg_suppkey, 0.5 * sum(l_quantity) AS agg_quantity
        FROM lineitem
        WHERE l_shipdate >= :date AND l_shipdate < :date_end
        GROUP BY l_partkey, l_suppkey) AS agg_lineitem
    WHERE agg_partkey = ps_partkey AND agg_suppkey = ps_suppkey
      AND ps_partkey IN (SELECT p_partkey FROM part WHERE p_name LIKE :color)
      AND ps_availqty > agg_quantity)
  AND s_nationkey = n_nationkey AND n_name = :nation
ORDER BY s_name"""

Q22_NOT_IN = """SELECT cntrycode, count(*) AS numcust, sum(c_acctbal) AS totacctbal
FROM (
  SELECT substr(c_phone, 1, 2) AS cntrycode, c_acctbal
  FROM customer
  WHERE substr(c_phone, 1, 2) IN (:code1, :code2, :code3, :code4, :code5, :code6, :code7)
    AND c_acctbal > (
      SELECT avg(c_acctbal) FROM customer
      WHERE c_acctbal > 0.00
        AND substr(c_phone, 1, 2) IN (:code1, :code2, :code3, :code4, :code5, :code6, :code7))
    AND c_custkey NOT IN (SELECT o_custkey FROM orders)) AS custsale
GROUP BY cntrycode
ORDER BY cntrycode"""

FK = ("index_fk",)
ONE = ("index_single",)
CORR = ("correlated_subquery",)
REWRITES: dict[int, tuple[Rewrite, ...]] = {
    1: (Rewrite("shipdate index", ONE, (LI_SHIP,)),),
    2: (
        Rewrite("part size index", ONE, (PART_SIZE,)),
        Rewrite("decorrelated minimum", CORR, (), Q2_DECORRELATED),
        Rewrite("decorrelated minimum + fk indexes", CORR + FK, (PS_SUPP, SUPP_NATION), Q2_DECORRELATED),
    ),
    3: (
        Rewrite("customer fk index", FK, (ORD_CUST,)),
        Rewrite("orderdate index", ONE, (ORD_DATE,)),
        Rewrite(
            "segment + customer fk indexes", FK, (_ix("cust_segment", "customer", "c_mktsegment"), ORD_CUST)
        ),
    ),
    4: (
        Rewrite("orderdate index", ONE, (ORD_DATE,)),
        Rewrite("exists to in", ("subquery_to_join",), (), Q4_IN),
        Rewrite("exists to in + orderdate index", ("subquery_to_join", *ONE), (ORD_DATE,), Q4_IN),
    ),
    5: (Rewrite("orderdate index", ONE, (ORD_DATE,)), Rewrite("fk indexes", FK, (ORD_CUST, LI_SUPP))),
    6: (
        Rewrite("shipdate index", ONE, (LI_SHIP,)),
        Rewrite(
            "covering shipdate index",
            ("index_composite",),
            (_ix("li_q6", "lineitem", "l_shipdate", "l_discount", "l_quantity", "l_extendedprice"),),
        ),
    ),
    7: (
        Rewrite("fk indexes", FK, (LI_SUPP, CUST_NATION, SUPP_NATION)),
        Rewrite("shipdate index", ONE, (LI_SHIP,)),
    ),
    8: (Rewrite("part fk index", FK, (LI_PART,)), Rewrite("orderdate index", ONE, (ORD_DATE,))),
    9: (Rewrite("part fk index", FK, (LI_PART,)),),
    10: (Rewrite("orderdate index", ONE, (ORD_DATE,)),),
    11: (Rewrite("supplier fk indexes", FK, (SUPP_NATION, PS_SUPP)),),
    12: (
        Rewrite("receiptdate index", ONE, (LI_RECEIPT,)),
        Rewrite(
            "covering receiptdate index",
            ("index_composite",),
            (
                _ix(
                    "li_q12",
                    "lineitem",
                    "l_receiptdate",
                    "l_shipmode",
                    "l_commitdate",
                    "l_shipdate",
                    "l_orderkey",
                ),
            ),
        ),
    ),
    13: (
        Rewrite("customer fk index", FK, (ORD_CUST,)),
        Rewrite(
            "covering customer fk index",
            ("index_composite",),
            (_ix("ord_q13", "orders", "o_custkey", "o_comment"),),
        ),
    ),
    14: (Rewrite("shipdate index", ONE, (LI_SHIP,)),),
    15: (Rewrite("shipdate index", ONE, (LI_SHIP,)),),
    16: (Rewrite("part size index", ONE, (PART_SIZE,)),),
    17: (
        Rewrite("part fk index", FK, (LI_PART,)),
        Rewrite("decorrelated average", CORR, (), Q17_DECORRELATED),
        Rewrite("decorrelated average, filtered", CORR, (), Q17_DECORRELATED_FILTERED),
    ),
    18: (),
    19: (
        Rewrite("part fk index", FK, (LI_PART,)),
        Rewrite(
            "part fk + ship index",
            ("index_composite",),
            (_ix("li_q19", "lineitem", "l_partkey", "l_shipinstruct", "l_shipmode"),),
        ),
        Rewrite(
            "brand/container index",
            ("index_composite",),
            (_ix("part_q19", "part", "p_brand", "p_container"),),
        ),
    ),
    20: (
        Rewrite("part/supplier fk index", FK, (_ix("li_part_supp", "lineitem", "l_partkey", "l_suppkey"),)),
        Rewrite("decorrelated sum", CORR, (), Q20_DECORRELATED),
    ),
    21: (
        Rewrite("supplier fk index", FK, (LI_SUPP,)),
        Rewrite("supplier fk indexes", FK, (LI_SUPP, SUPP_NATION)),
    ),
    22: (
        Rewrite("customer fk index", FK, (ORD_CUST,)),
        Rewrite("not exists to not in", CORR, (), Q22_NOT_IN),
    ),
}
"""Per template, the candidate references tried, in order."""
