"""Example assets: a small extract and a summary that depends on it.

Replace them with your own. Each asset's value is stored by the default IO manager
on the shared data volume, so a later run can rematerialize one asset alone.
"""

import dagster as dg


@dg.asset(group_name="example", kinds={"python"})
def raw_orders(context: dg.AssetExecutionContext) -> list[dict]:
    """A batch of orders (stands in for an extract from a source system)."""
    orders = [{"order_id": i, "amount": round(10 + i * 2.5, 2)} for i in range(1, 11)]
    context.add_output_metadata({"rows": len(orders)})
    return orders


@dg.asset(group_name="example", kinds={"python"})
def order_summary(context: dg.AssetExecutionContext, raw_orders: list[dict]) -> dict:
    """Totals computed from raw_orders."""
    total = round(sum(order["amount"] for order in raw_orders), 2)
    summary = {"orders": len(raw_orders), "revenue": total}
    context.add_output_metadata(summary)
    return summary
