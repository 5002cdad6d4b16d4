"""Asset selection strings in Dagster's syntax: what they select, and where they are wrong."""

from __future__ import annotations

import pytest

from defstate import AssetSpec
from defstate.selection import AssetSelection, SelectionSyntaxError

# raw/orders -> stg_orders -> orders -> report ; other stands alone
ASSETS = [
    AssetSpec("raw/orders", group_name="raw", kinds=["sqlite", "table"]),
    AssetSpec("stg_orders", deps=["raw/orders"], tags={"pii": ""}, kinds=["dbt"]),
    AssetSpec(
        "orders", deps=["stg_orders"], owners=["team:data"], tags={"tier": "gold"}, kinds=["dbt"]
    ),
    AssetSpec("report", deps=["orders", "external/source"], owners=["ana@example.com"]),
    AssetSpec("other", group_name="misc", tags={"tier": "silver"}),
]


def select(text: str) -> list[str]:
    return sorted(k.to_string() for k in AssetSelection.from_string(text).resolve(ASSETS))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("*", ["orders", "other", "raw/orders", "report", "stg_orders"]),
        ("key:orders", ["orders"]),
        ('key:"raw/orders"', ["raw/orders"]),
        ("key:raw/*", ["raw/orders"]),
        ("key:*orders", ["orders", "raw/orders", "stg_orders"]),
        ("group:raw", ["raw/orders"]),
        ("tag:pii", ["stg_orders"]),
        ("tag:tier", ["orders", "other"]),
        ("tag:tier=gold", ["orders"]),
        ('tag:tier="silver"', ["other"]),
        ("kind:dbt", ["orders", "stg_orders"]),
        ("owner:team:data", ["orders"]),
        ('owner:"ana@example.com"', ["report"]),
        ("+key:orders", ["orders", "raw/orders", "stg_orders"]),
        ("1+key:orders", ["orders", "stg_orders"]),
        ("key:stg_orders+", ["orders", "report", "stg_orders"]),
        ("key:stg_orders+1", ["orders", "stg_orders"]),
        ("1+key:orders+1", ["orders", "report", "stg_orders"]),
        ("+(key:orders or key:other)", ["orders", "other", "raw/orders", "stg_orders"]),
        ("not kind:dbt", ["other", "raw/orders", "report"]),
        ("kind:dbt and not tag:pii", ["orders"]),
        ("NOT kind:dbt AND NOT key:report", ["other", "raw/orders"]),
        # precedence: not > and > or
        ("key:other or kind:dbt and tag:pii", ["other", "stg_orders"]),
        ("(key:other or kind:dbt) and tag:pii", ["stg_orders"]),
        ("not key:other and not key:report", ["orders", "raw/orders", "stg_orders"]),
        ("roots(*)", ["other", "raw/orders"]),
        ("sinks(*)", ["other", "report"]),
        ("sinks(kind:dbt)", ["orders"]),
        ("key:nothing", []),
    ],
)
def test_selects_like_dagster(text: str, expected: list[str]) -> None:
    assert select(text) == expected


@pytest.mark.parametrize(
    ("text", "column", "problem"),
    [
        ("", 1, "the selection is empty"),
        ("key:", 5, "expected a value after 'key:'"),
        ("key:a and", 10, "expected an expression after 'and'"),
        ("key:a or or key:b", 10, "expected an expression before 'or'"),
        ("orders", 1, "expected an attribute before 'orders', e.g. key:orders"),
        ("status:x", 1, "unknown attribute 'status'"),
        ("(key:a or key:b", 16, "expected ')' closing the '(' at column 1"),
        ('key:"a', 5, "unterminated quoted value"),
        ("group:a*", 7, "wildcards (*) are only allowed in key: values"),
        ("key:a key:b", 7, "unexpected 'key': expected 'and', 'or' or the end"),
        ("key:a)", 6, "unexpected ')'"),
        ("sinks(key:a", 12, "expected ')' closing sinks("),
    ],
)
def test_syntax_errors_point_at_the_column(text: str, column: int, problem: str) -> None:
    with pytest.raises(SelectionSyntaxError) as raised:
        AssetSelection.from_string(text)
    error = raised.value
    assert error.column == column
    assert problem in str(error)
    assert str(error).startswith(f"invalid selection at column {column}: ")
    assert error.pointer == (text, " " * (column - 1) + "^")
    assert error.exit_code == 2


def test_select_keeps_the_order_of_the_specs() -> None:
    chosen = AssetSelection.from_string("kind:dbt or key:raw/*").select(ASSETS)
    assert [s.key.to_string() for s in chosen] == ["raw/orders", "stg_orders", "orders"]
