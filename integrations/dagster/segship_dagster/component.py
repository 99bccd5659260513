"""segship's assets and schedules from a Dagster ``defs.yaml`` (Dagster components).

.. code-block:: yaml

    type: segship_dagster.SegshipComponent
    attributes:
      config: segship.yaml                          # relative to this folder; a file or a directory
      deps: {vip-to-braze: [marts/vip_customers]}   # upstream asset keys, as Dagster writes them
"""

from dagster import AssetKey, Component, ComponentLoadContext, Definitions, Model, Resolvable

from segship_dagster.assets import load, segship_assets
from segship_dagster.schedules import segship_schedules


class SegshipComponent(Component, Resolvable, Model):
    """Every export of a segship config as an asset with its `segship_rejects` check, and its schedule."""

    config: str = "segship.yaml"
    deps: dict[str, list[str]] = {}

    def build_defs(self, context: ComponentLoadContext) -> Definitions:
        config = load(context.path / self.config)
        deps = {export: [AssetKey.from_user_string(key) for key in keys] for export, keys in self.deps.items()}
        return Definitions(assets=segship_assets(config, deps=deps), schedules=segship_schedules(config))
