from rmscore.cli import main

main()
