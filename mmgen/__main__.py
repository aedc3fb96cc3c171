from mmgen.cli import main

main()
