from jpki_service.entrypoints.cli import main

main()
