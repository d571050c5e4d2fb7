from services.retry.main import main

main()
