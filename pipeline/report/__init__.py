"""The corpus report: numbers from the tables (DuckDB), figures (matplotlib), HTML and dataset card.

Split in three so each part can be tested and reused alone: :mod:`.data` asks the questions in
SQL over the same views ``derm1m query`` uses, :mod:`.figures` draws them deterministically,
:mod:`.render` writes the self-contained ``index.html`` and ``DATASET_CARD.md`` from the same
dictionary, so the page, the card and ``metrics.json`` can never disagree.
"""
