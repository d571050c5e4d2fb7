from services.sender_email.main import main

main()
