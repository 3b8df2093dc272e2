"""python -m mosaic_assembler.cli."""

from mosaic_assembler.cli import main

main()
