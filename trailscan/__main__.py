from trailscan.cli import main

main()
