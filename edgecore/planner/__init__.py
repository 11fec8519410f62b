"""Partition planning under a memory budget (see plan.py) and the cost model
that picks a strategy (see cost.py)."""

from edgecore.planner.cost import CostModel, DeviceRates, device_rates
from edgecore.planner.experts import expected_traffic, plan_model, plan_with_expert_cache
from edgecore.planner.plan import (
           MIN_STEP_TOKENS,
           STRATEGIES,
           BudgetTooSmall,
           Group,
           Plan,
           PlanError,
           fit_step,
           make_plan,
           minimum_budget,
)

__all__ = ["MIN_STEP_TOKENS", "STRATEGIES", "BudgetTooSmall", "CostModel", "DeviceRates", "Group", "Plan",
           "PlanError", "device_rates", "expected_traffic", "fit_step", "make_plan", "minimum_budget", "plan_model",
           "plan_with_expert_cache"]
