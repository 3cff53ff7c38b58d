from app_client.cli import main

main()
