from jpki_service.cli import main

main()
