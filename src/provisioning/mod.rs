pub mod destinations;
