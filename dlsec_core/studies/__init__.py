"""Studies: the store-aware work items the lab runs (train, sweep, ...), each a frozen JSON config in, a JSON
result out, executed as a stored run (`dlsec_core.runs`) by an executor (`dlsec_core.execution`).

Importing this package registers nothing; `dlsec_core.studies.catalog` is the one place that lists the studies.
"""

from dlsec_core.studies.base import Study, StudyConfig, StudyEvent, StudyOutcome

__all__ = ["Study", "StudyConfig", "StudyEvent", "StudyOutcome"]
