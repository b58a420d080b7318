"""What build_zipapp.py runs or copies into flow.pyz, as real files (under ruff and the tests):

    make_tables.py    run with the bundled lark: the grammar's LALR tables
    compile_tree.py   run by each interpreter: its bytecode tree, docstrings left out
    tree_data.py      run by each interpreter: its frozen regexes and record __init__s
    tables_module.py  copied as flowdsl/lang/_tables.py: reads those tables from the archive
    archive_main.py   copied as the archive's __main__.py, its PYC_TREES filled in
"""
