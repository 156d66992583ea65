"""GAN generators and discriminators (lesson 6)."""
