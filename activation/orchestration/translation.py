"""A component's `translation` (asset key, group, description, tags...) over the sync translator.

The translation is a function of (the spec the translator builds, the sync), as dagster-sling's
and dagster-dbt's components resolve theirs from YAML. It is applied once per sync, to the
untranslated spec, and everything that names the asset (its checks, the automation groups, the
run's materializations) reads the translated key, so a renamed asset keeps its checks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import dagster as dg

from activation.orchestration.translator import DestinationTraits, Mart, SyncTranslator
from activation.syncs.spec import SyncConfig, SyncSpec

Translation = Callable[[dg.AssetSpec, SyncSpec], dg.AssetSpec]


class TranslatedSyncTranslator(SyncTranslator):
    def __init__(
        self,
        config: SyncConfig,
        marts: Mapping[str, Mart],
        destinations: Mapping[str, DestinationTraits],
        translation: Translation,
    ) -> None:
        super().__init__(config, marts, destinations)
        self._plain = SyncTranslator(config, marts, destinations)
        self._translation = translation
        self._specs: dict[str, dg.AssetSpec] = {}

    def get_asset_spec(self, sync: SyncSpec) -> dg.AssetSpec:
        if sync.name not in self._specs:
            self._specs[sync.name] = self._translation(self._plain.get_asset_spec(sync), sync)
        return self._specs[sync.name]

    def get_asset_key(self, sync: SyncSpec) -> dg.AssetKey:
        return self.get_asset_spec(sync).key

    def get_group_name(self, sync: SyncSpec) -> str:
        return self.get_asset_spec(sync).group_name or super().get_group_name(sync)

    def get_description(self, sync: SyncSpec) -> str:
        return self.get_asset_spec(sync).description or super().get_description(sync)
