"""Configuration: YAML -> strict pydantic models -> one `ConfigError` naming the failing path.

- `load`: the file, the `AUGUR_*` environment and the flags merged into `Config`, and every
  check `augur check-config` and `augur run` share;
- `root`: `Config` and augur's own sections (poll, web, log, state); `queries`: the scored
  queries; `prometheus`: where and how to query it; `alerts`: webhook, enrichment, model,
  Alertmanager;
- `secrets`: secret files, the environment's credentials, the CA bundle;
- `base`: the strict base model, `ConfigError`, located messages; `durations`: `30s`, `1h`.

The package imports nothing of augur's runtime, only the detector registry (a detector's
settings model lives beside the detector). This `__init__` imports nothing at all: detectors
import `exporter.config.durations`, so anything imported here would close a cycle through
them. Import each name from its module.
"""
