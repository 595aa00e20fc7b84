"""Published result tables of the NNW-TEC specification, as versioned data.

``nnw-tec-v1.0.json`` transcribes Tables 2-23 of MPAI NNW-TEC V1.0 (numbers as printed; the
readings applied to the source's drafting defects are listed in its ``defects_applied`` field
and in each table's ``notes``). Use :func:`published_rows` to print measured values beside the
published ones.
"""
from nnw.spec.tables import SPEC_FILES, SpecTableError, load_spec_tables, published_rows, table_columns

__all__ = ["SPEC_FILES", "SpecTableError", "load_spec_tables", "published_rows", "table_columns"]
