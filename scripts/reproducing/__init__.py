"""The parts of scripts/reproduce.py (which is the command line), in reading order:

    registry.py       TABLES: every measured table of the docs, page by page, and its commands
    steps.py          what a table is (Table, Step) and where its commands write (RUNS/NAME)
    runner.py         running a table: skip, resume, records and logs; the block's header line
    outputs.py        what the commands left, as a table's builder reads it
    tables_*.py       the builders, by page: unlearning (results, baselines), bias, generalist,
                      sweeps, performance, byo
    formatting.py     how the tables write numbers, and a markdown table
    pages.py          the reproduce markers of a page; rewriting one block atomically

Nothing here needs more than the standard library.
"""
