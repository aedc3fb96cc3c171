from mmgen.entry import main

main()
