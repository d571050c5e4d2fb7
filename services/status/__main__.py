from services.status.main import main

main()
