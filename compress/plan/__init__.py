"""The planned build: what a build trains on, from the data's shape, this machine's throughput and a time budget.

``plan(cfg, shape, speeds, settings) -> Plan`` decides (:mod:`edgedistill.compress.plan.planner`, pure; its inputs
and output in :mod:`edgedistill.compress.plan.shapes`);
``plan_build(recipe) -> (recipe, plan)`` reads the data, measures the machine (:mod:`edgedistill.compress.plan.probe`),
plans and keeps the plan for the next build (:mod:`edgedistill.compress.plan.build`).
"""

from edgedistill.compress.plan.build import plan_build
from edgedistill.compress.plan.planner import plan
from edgedistill.compress.plan.shapes import Plan, PlanConfig

__all__ = ["Plan", "PlanConfig", "plan", "plan_build"]
