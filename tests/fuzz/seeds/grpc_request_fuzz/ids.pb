
support-bot\"