from services.sender_push.main import main

main()
