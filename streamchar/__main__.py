from streamchar.cli.main import main

main()
