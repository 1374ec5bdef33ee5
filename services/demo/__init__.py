"""`percept demo`: a phone call, a chat and a store visit becoming one hot lead."""
