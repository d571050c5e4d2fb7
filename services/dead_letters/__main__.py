from services.dead_letters.main import main

main()
