from duoli.cli import main

if __name__ == "__main__":  # a spawned process imports this module too
    main()
