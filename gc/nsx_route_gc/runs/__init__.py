"""The runs: scan, apply, restore and demo, and the frame they share (run id, summary line, exit
code). They wire adapters to the domain; they may import anything but the CLI.
"""
