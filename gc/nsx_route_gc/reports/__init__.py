"""The reports: rows made from verdicts, report.json/csv/md files, rendering for Markdown and
the terminal, and saved plans read back. May import the domain and the cross-cutting modules,
never a run.
"""
