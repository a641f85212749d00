from kipvs.cli import main

main()
