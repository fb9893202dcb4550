"""The command-line programs: each module holds one command's argument parsing and its
``main(argv) -> exit code``, installed as a console script (``seqdeca-video2mesh``,
``seqdeca-train``, ``seqdeca-evaluate``, ``seqdeca-prepare``; see pyproject.toml), runnable as
``python -m seqdeca.commands.<name>`` (so also ``accelerate launch -m``) and wrapped by
``tools/*.py`` for a checkout. Commands sit on top: nothing else in the package imports them.
"""
