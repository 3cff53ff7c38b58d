from ca_mock.cli import main

main()
