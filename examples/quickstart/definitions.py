from defstate.contrib.dagster import build_dagster_definitions

defs = build_dagster_definitions()
