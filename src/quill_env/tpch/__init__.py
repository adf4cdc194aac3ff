"""TPC-H in Quill: the packaged data generator (:mod:`.dbgen`) and qgen-style query templates (:mod:`.qgen`).

Importing this package imports neither DuckDB nor the extension; they load when data is generated.
"""
