from services.sender_webhook.main import main

main()
