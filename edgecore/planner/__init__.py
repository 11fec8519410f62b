"""Partition planning under a memory budget (see plan.py) and the cost model
that picks a strategy (see cost.py)."""

from edgecore.planner.cost import CostModel, DeviceRates, device_rates
from edgecore.planner.plan import STRATEGIES, BudgetTooSmall, Group, Plan, PlanError, make_plan, minimum_budget

__all__ = ["STRATEGIES", "BudgetTooSmall", "CostModel", "DeviceRates", "Group", "Plan", "PlanError",
           "device_rates", "make_plan", "minimum_budget"]
