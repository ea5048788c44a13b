"""dataset_pipeline: the domain library (no Dagster here, but for definitions.py and automation.py)."""

import os

# pyarrow's C++ code allocates from the pool this variable names, read once, at its first
# allocation; set before pyarrow is imported, it covers the Parquet reader's buffers too,
# which ``pyarrow.set_memory_pool`` (store.use_system_arrow_pool, the fallback when pyarrow
# came first) does not reach. mimalloc keeps its arenas: a 1,000-image release export peaked
# 16 MiB higher with it. A pool the user names is kept. See docs/decisions.md.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

__version__ = "0.1.0"
