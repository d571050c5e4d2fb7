from services.archiver.main import main

main()
