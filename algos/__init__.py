"""Learning on Ray RLlib: experiment config, Ape-X parts, training driver, policy store."""
