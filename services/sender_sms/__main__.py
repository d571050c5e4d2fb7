from services.sender_sms.main import main

main()
