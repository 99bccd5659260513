"""A Dagster code location with segship's exports as assets, downstream of the model they read.

Load it with `dagster definitions validate -f definitions.py` or `dagster dev -f definitions.py`.
"""

from pathlib import Path

from dagster import AssetSpec, Definitions
from segship_dagster import segship_assets, segship_schedules

CONFIG = Path(__file__).parent / "segship.yaml"

# Stands for the dbt model (or any table) the `vip` segment reads; with dagster-dbt it is one of its assets.
vip_customers = AssetSpec(["marts", "vip_customers"], description="Customers who spent more than 1,000")

defs = Definitions(
    assets=[vip_customers, *segship_assets(CONFIG, deps={"vip-to-braze": [vip_customers.key]})],
    schedules=segship_schedules(CONFIG),
)
