"""The 22 TPC-H query templates, with substitution parameters drawn as TPC-H's ``qgen`` draws them.

Each template is SQLite SQL (the suites' dialect) with named placeholders (``:date``); an
instance replaces them with literals through sqlglot (never string formatting). The rules follow
the TPC-H specification's substitution parameters (clause 2.4.N.3 of each query): dates drawn
uniformly from the stated ranges, segments, regions, nations, types, containers, colours, ship
modes and words from the lists of ``dists.dss``. Interval arithmetic (``date + interval '3'
month``) is done on the parameter, as qgen's output for SQLite must be.

Instances are deterministic: instance ``i`` of template ``q`` under ``seed`` draws from
``numpy.random.default_rng([seed, q, i])``.

>>> a = instance(6, 0, seed=1)
>>> a.sql == instance(6, 0, seed=1).sql and a.sql != instance(6, 1, seed=1).sql
True
>>> sorted(a.params)
['DATE', 'DISCOUNT', 'QUANTITY']
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlglot
from sqlglot import exp
from sqlglot.tokens import TokenType

from quill_env.dialect import SUITE_DIALECT
from quill_env.tpch.templates import TEMPLATES

# --- the lists qgen draws from (TPC-H dists.dss) ---------------------------------------------

REGIONS = ("AFRICA", "AMERICA", "ASIA", "EUROPE", "MIDDLE EAST")
NATIONS = (
    ("ALGERIA", 0),
    ("ARGENTINA", 1),
    ("BRAZIL", 1),
    ("CANADA", 1),
    ("EGYPT", 4),
    ("ETHIOPIA", 0),
    ("FRANCE", 3),
    ("GERMANY", 3),
    ("INDIA", 2),
    ("INDONESIA", 2),
    ("IRAN", 4),
    ("IRAQ", 4),
    ("JAPAN", 2),
    ("JORDAN", 4),
    ("KENYA", 0),
    ("MOROCCO", 0),
    ("MOZAMBIQUE", 0),
    ("PERU", 1),
    ("CHINA", 2),
    ("ROMANIA", 3),
    ("SAUDI ARABIA", 4),
    ("VIETNAM", 2),
    ("RUSSIA", 3),
    ("UNITED KINGDOM", 3),
    ("UNITED STATES", 1),
)
"""``(n_name, n_regionkey)`` in n_nationkey order; ``c_phone`` starts with ``n_nationkey + 10``."""
SEGMENTS = ("AUTOMOBILE", "BUILDING", "FURNITURE", "MACHINERY", "HOUSEHOLD")
TYPE_SYLLABLES = (
    ("STANDARD", "SMALL", "MEDIUM", "LARGE", "ECONOMY", "PROMO"),
    ("ANODIZED", "BURNISHED", "PLATED", "POLISHED", "BRUSHED"),
    ("TIN", "NICKEL", "BRASS", "STEEL", "COPPER"),
)
CONTAINER_SYLLABLES = (
    ("SM", "LG", "MED", "JUMBO", "WRAP"),
    ("CASE", "BOX", "BAG", "JAR", "PKG", "PACK", "CAN", "DRUM"),
)
SHIP_MODES = ("REG AIR", "AIR", "RAIL", "SHIP", "TRUCK", "MAIL", "FOB")
_COLOR_WORDS = """almond antique aquamarine azure beige bisque black blanched blue blush brown burlywood
    burnished chartreuse chiffon chocolate coral cornflower cornsilk cream cyan dark deep dim dodger
    drab firebrick floral forest frosted gainsboro ghost goldenrod green grey honeydew hot indian
    ivory khaki lace lavender lawn lemon light lime linen magenta maroon medium metallic midnight
    mint misty moccasin navajo navy olive orange orchid pale papaya peach peru pink plum powder
    puff purple red rose rosy royal saddle salmon sandy seashell sienna sky slate smoke snow spring
    steel tan thistle tomato turquoise violet wheat white yellow"""
COLORS = tuple(_COLOR_WORDS.split())
"""The 92 colours ``p_name`` is made of."""
Q13_WORDS = (("special", "pending", "unusual", "express"), ("packages", "requests", "accounts", "deposits"))

TEST_TEMPLATES = (5, 8, 13, 17, 20, 22)
"""Held-out templates (the test split); the other 16 are training templates, so test templates are
unseen, as in LLM-R2. Three of the six correlated templates are held out (Q17, Q20, Q22) and three
train (Q2, Q4, Q21)."""


def split_of(template: int) -> str:
    """``test`` for a held-out template, ``train`` otherwise."""
    return "test" if template in TEST_TEMPLATES else "train"


SMALL_SCALE_FACTOR = 0.01
"""The scale factor Q11's FRACTION (0.0001 / SF) is computed for: the tier tasks are validated on."""


# --- drawing ------------------------------------------------------------------------------------


def _day(rng: np.random.Generator, start: dt.date, end: dt.date) -> dt.date:
    return start + dt.timedelta(days=int(rng.integers(0, (end - start).days + 1)))


def _month(rng: np.random.Generator, first: tuple[int, int], last: tuple[int, int]) -> dt.date:
    """The first day of a month drawn uniformly from ``first`` to ``last`` (year, month), inclusive."""
    lo, hi = first[0] * 12 + first[1] - 1, last[0] * 12 + last[1] - 1
    m = int(rng.integers(lo, hi + 1))
    return dt.date(m // 12, m % 12 + 1, 1)


def add_months(day: dt.date, months: int) -> dt.date:
    """``day`` plus whole months (SQL's ``+ interval 'n' month`` on a first of the month).

    >>> add_months(dt.date(1997, 11, 1), 3)
    datetime.date(1998, 2, 1)
    """
    m = day.year * 12 + day.month - 1 + months
    return day.replace(year=m // 12, month=m % 12 + 1)


def _year(rng: np.random.Generator) -> dt.date:
    return dt.date(int(rng.integers(1993, 1998)), 1, 1)


def _pick(rng: np.random.Generator, options: tuple, k: int | None = None) -> Any:
    if k is None:
        return options[int(rng.integers(0, len(options)))]
    return tuple(options[i] for i in rng.choice(len(options), size=k, replace=False))


def _brand(rng: np.random.Generator) -> str:
    return f"Brand#{int(rng.integers(1, 6))}{int(rng.integers(1, 6))}"


def _nation(rng: np.random.Generator) -> str:
    return _pick(rng, NATIONS)[0]


def _type(rng: np.random.Generator) -> str:
    return " ".join(_pick(rng, s) for s in TYPE_SYLLABLES)


Params = dict[str, Any]


def _q1(rng):
    return {"DELTA": int(rng.integers(60, 121))}


def _q2(rng):
    return {
        "SIZE": int(rng.integers(1, 51)),
        "TYPE": _pick(rng, TYPE_SYLLABLES[2]),
        "REGION": _pick(rng, REGIONS),
    }


def _q3(rng):
    return {"SEGMENT": _pick(rng, SEGMENTS), "DATE": _day(rng, dt.date(1995, 3, 1), dt.date(1995, 3, 31))}


def _q5(rng):
    return {"REGION": _pick(rng, REGIONS), "DATE": _year(rng)}


def _q6(rng):
    return {
        "DATE": _year(rng),
        "DISCOUNT": int(rng.integers(2, 10)) / 100,
        "QUANTITY": int(rng.integers(24, 26)),
    }


def _q7(rng):
    a, b = _pick(rng, NATIONS, 2)
    return {"NATION1": a[0], "NATION2": b[0]}


def _q8(rng):
    name, region = _pick(rng, NATIONS)
    return {"NATION": name, "REGION": REGIONS[region], "TYPE": _type(rng)}


def _q11(rng):
    return {"NATION": _nation(rng), "FRACTION": 0.0001 / SMALL_SCALE_FACTOR}


def _q12(rng):
    a, b = _pick(rng, SHIP_MODES, 2)
    return {"SHIPMODE1": a, "SHIPMODE2": b, "DATE": _year(rng)}


def _q13(rng):
    return {"WORD1": _pick(rng, Q13_WORDS[0]), "WORD2": _pick(rng, Q13_WORDS[1])}


def _q14(rng):
    return {"DATE": dt.date(int(rng.integers(1993, 1998)), int(rng.integers(1, 13)), 1)}


def _q16(rng):
    sizes = sorted(int(s) for s in rng.choice(np.arange(1, 51), size=8, replace=False))
    return {"BRAND": _brand(rng), "TYPE": " ".join(_pick(rng, s) for s in TYPE_SYLLABLES[:2]), "SIZES": sizes}


def _q17(rng):
    return {"BRAND": _brand(rng), "CONTAINER": " ".join(_pick(rng, s) for s in CONTAINER_SYLLABLES)}


def _q19(rng):
    return {
        "QUANTITY1": int(rng.integers(1, 11)),
        "QUANTITY2": int(rng.integers(10, 21)),
        "QUANTITY3": int(rng.integers(20, 31)),
        "BRAND1": _brand(rng),
        "BRAND2": _brand(rng),
        "BRAND3": _brand(rng),
    }


def _q20(rng):
    return {"COLOR": _pick(rng, COLORS), "DATE": _year(rng), "NATION": _nation(rng)}


def _q22(rng):
    return {"CODES": sorted(str(n + 10) for n in rng.choice(len(NATIONS), size=7, replace=False))}


DRAW: dict[int, Callable[[np.random.Generator], Params]] = {
    1: _q1,
    2: _q2,
    3: _q3,
    4: lambda rng: {"DATE": _month(rng, (1993, 1), (1997, 10))},
    5: _q5,
    6: _q6,
    7: _q7,
    8: _q8,
    9: lambda rng: {"COLOR": _pick(rng, COLORS)},
    10: lambda rng: {"DATE": _month(rng, (1993, 2), (1995, 1))},
    11: _q11,
    12: _q12,
    13: _q13,
    14: _q14,
    15: lambda rng: {"DATE": _month(rng, (1993, 1), (1997, 10))},
    16: _q16,
    17: _q17,
    18: lambda rng: {"QUANTITY": int(rng.integers(312, 316))},
    19: _q19,
    20: _q20,
    21: lambda rng: {"NATION": _nation(rng)},
    22: _q22,
}
"""Per template, qgen's substitution parameters (TPC-H 2.4.N.3), by their names in the spec."""

VALIDATION: dict[int, Params] = {
    1: {"DELTA": 90},
    2: {"SIZE": 15, "TYPE": "BRASS", "REGION": "EUROPE"},
    3: {"SEGMENT": "BUILDING", "DATE": dt.date(1995, 3, 15)},
    4: {"DATE": dt.date(1993, 7, 1)},
    5: {"REGION": "ASIA", "DATE": dt.date(1994, 1, 1)},
    6: {"DATE": dt.date(1994, 1, 1), "DISCOUNT": 0.06, "QUANTITY": 24},
    7: {"NATION1": "FRANCE", "NATION2": "GERMANY"},
    8: {"NATION": "BRAZIL", "REGION": "AMERICA", "TYPE": "ECONOMY ANODIZED STEEL"},
    9: {"COLOR": "green"},
    10: {"DATE": dt.date(1993, 10, 1)},
    11: {"NATION": "GERMANY", "FRACTION": 0.0001},
    12: {"SHIPMODE1": "MAIL", "SHIPMODE2": "SHIP", "DATE": dt.date(1994, 1, 1)},
    13: {"WORD1": "special", "WORD2": "requests"},
    14: {"DATE": dt.date(1995, 9, 1)},
    15: {"DATE": dt.date(1996, 1, 1)},
    16: {"BRAND": "Brand#45", "TYPE": "MEDIUM POLISHED", "SIZES": [49, 14, 23, 45, 19, 3, 36, 9]},
    17: {"BRAND": "Brand#23", "CONTAINER": "MED BOX"},
    18: {"QUANTITY": 300},
    19: {
        "QUANTITY1": 1,
        "QUANTITY2": 10,
        "QUANTITY3": 20,
        "BRAND1": "Brand#12",
        "BRAND2": "Brand#23",
        "BRAND3": "Brand#34",
    },
    20: {"COLOR": "forest", "DATE": dt.date(1994, 1, 1), "NATION": "CANADA"},
    21: {"NATION": "SAUDI ARABIA"},
    22: {"CODES": ["13", "31", "23", "29", "30", "18", "17"]},
}
"""The specification's validation (qualification) parameters, per template."""


# --- the placeholders each template takes, from the parameters ------------------------------


def _iso(day: dt.date) -> str:
    return day.isoformat()


def bindings(q: int, p: Params) -> dict[str, Any]:
    """The template's placeholder values (dates as ISO text, interval arithmetic applied)."""
    if q == 1:
        return {"date": _iso(dt.date(1998, 12, 1) - dt.timedelta(days=p["DELTA"]))}
    if q == 2:
        return {"size": p["SIZE"], "type": f"%{p['TYPE']}", "region": p["REGION"]}
    if q == 3:
        return {"segment": p["SEGMENT"], "date": _iso(p["DATE"])}
    if q in (4, 10, 15):
        return {"date": _iso(p["DATE"]), "date_end": _iso(add_months(p["DATE"], 3))}
    if q == 5:
        return {"region": p["REGION"], "date": _iso(p["DATE"]), "date_end": _iso(add_months(p["DATE"], 12))}
    if q == 6:
        d = p["DISCOUNT"]
        return {
            "date": _iso(p["DATE"]),
            "date_end": _iso(add_months(p["DATE"], 12)),
            "discount_low": round(d - 0.01, 2),
            "discount_high": round(d + 0.01, 2),
            "quantity": p["QUANTITY"],
        }
    if q == 7:
        return {"nation1": p["NATION1"], "nation2": p["NATION2"]}
    if q == 8:
        return {"nation": p["NATION"], "region": p["REGION"], "type": p["TYPE"]}
    if q == 9:
        return {"color": f"%{p['COLOR']}%"}
    if q == 11:
        return {"nation": p["NATION"], "fraction": round(p["FRACTION"], 10)}
    if q == 12:
        return {
            "shipmode1": p["SHIPMODE1"],
            "shipmode2": p["SHIPMODE2"],
            "date": _iso(p["DATE"]),
            "date_end": _iso(add_months(p["DATE"], 12)),
        }
    if q == 13:
        return {"comment": f"%{p['WORD1']}%{p['WORD2']}%"}
    if q == 14:
        return {"date": _iso(p["DATE"]), "date_end": _iso(add_months(p["DATE"], 1))}
    if q == 16:
        out = {"brand": p["BRAND"], "type": f"{p['TYPE']}%"}
        return out | {f"size{i + 1}": s for i, s in enumerate(p["SIZES"])}
    if q == 17:
        return {"brand": p["BRAND"], "container": p["CONTAINER"]}
    if q == 18:
        return {"quantity": p["QUANTITY"]}
    if q == 19:
        return {k.lower(): v for k, v in p.items()}
    if q == 20:
        return {
            "color": f"{p['COLOR']}%",
            "date": _iso(p["DATE"]),
            "date_end": _iso(add_months(p["DATE"], 12)),
            "nation": p["NATION"],
        }
    if q == 21:
        return {"nation": p["NATION"]}
    if q == 22:
        return {f"code{i + 1}": c for i, c in enumerate(p["CODES"])}
    raise KeyError(f"TPC-H has no template Q{q}")


def _literal(value: Any) -> exp.Expression:
    if isinstance(value, str):
        return exp.Literal.string(value)
    if isinstance(value, float):
        return exp.Literal.number(repr(value))
    return exp.Literal.number(int(value))


def render(template: str, values: dict[str, Any], dialect: str = SUITE_DIALECT) -> str:
    """``template`` with every ``:name`` placeholder replaced by the literal of ``values[name]``.

    The template's own text is kept (its comma joins, its layout): only the placeholder tokens,
    found by sqlglot's tokenizer, are replaced, by literals that sqlglot renders and quotes.
    Regenerating the whole query from sqlglot's tree would turn ``FROM a, b`` into ``CROSS JOIN``,
    which SQLite's planner reads as a fixed join order.

    >>> render("SELECT a FROM t, u WHERE d < :d AND s = ':x' AND q > :q", {"d": "1995-03-15", "q": 0.05})
    "SELECT a FROM t, u WHERE d < '1995-03-15' AND s = ':x' AND q > 0.05"

    Raises:
        KeyError: a placeholder has no value, or a value has no placeholder.
    """
    tokens = sqlglot.Dialect.get_or_raise(dialect).tokenize(template)
    out, last, used = [], 0, set()
    for colon, name in zip(tokens, tokens[1:]):
        word = name.token_type is not TokenType.STRING and name.text.isidentifier()  # `date` is a keyword
        if colon.token_type is TokenType.COLON and word and name.start == colon.end + 1:
            if name.text not in values:
                raise KeyError(f"no value for placeholder :{name.text}")
            out += [template[last : colon.start], _literal(values[name.text]).sql(dialect)]
            last, used = name.end + 1, used | {name.text}
    if set(values) - used:
        raise KeyError(f"values without a placeholder: {sorted(set(values) - used)}")
    return "".join([*out, template[last:]])


# --- instances ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instance:
    """One query of a template with drawn parameters.

    Args:
        template: the TPC-H query number, 1..22.
        index: the instance number under the seed.
        params: qgen's substitution parameters (by the specification's names).
        sql: the query in SQLite.
    """

    template: int
    index: int
    params: Params
    sql: str

    @property
    def name(self) -> str:
        """``q02_007``: template and instance."""
        return f"q{self.template:02d}_{self.index:03d}"


def params_for(template: int, index: int, seed: int) -> Params:
    """The qgen parameters of instance ``index`` of ``template`` under ``seed``."""
    if template not in DRAW:
        raise KeyError(f"TPC-H has no template Q{template}; templates are 1..22")
    return DRAW[template](np.random.default_rng([seed, template, index]))


def instance(template: int, index: int, seed: int) -> Instance:
    """Instance ``index`` of ``template`` under ``seed`` (deterministic)."""
    params = params_for(template, index, seed)
    return Instance(template, index, params, render(TEMPLATES[template], bindings(template, params)))


def validation_query(template: int) -> str:
    """The template with the specification's validation parameters (TPC-H's qualification query)."""
    return render(TEMPLATES[template], bindings(template, VALIDATION[template]))


def instances(templates: list[int], per_template: int, seed: int) -> Iterator[Instance]:
    """``per_template`` instances of each template, template by template."""
    for q in templates:
        for i in range(per_template):
            yield instance(q, i, seed)
