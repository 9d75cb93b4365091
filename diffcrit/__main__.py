from diffcrit.cli import main

main()
