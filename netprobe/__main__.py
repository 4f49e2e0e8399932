from netprobe.commands import main

main()
