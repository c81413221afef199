//! The static layout of a performance in memory: seat indices by section
//! and row, what the layout endpoint serves, and the legacy full seat map
//! built from the layout and an availability bitmap.

use std::collections::HashMap;

use super::bitmap::Bitmap;
use crate::api::{
    Seat, SeatMap,
    seatmap::{LayoutRow, LayoutSection, SeatLayout, SeatRun},
};

/// A seat as the store lists it (sorted by id).
#[derive(Debug, Clone)]
pub struct SeatRow {
    /// Seat id.
    pub id: i64,
    /// Section.
    pub section: String,
    /// Row label.
    pub row: String,
    /// Number in the row.
    pub number: i32,
    /// Price grade.
    pub grade: String,
    /// Price in KRW.
    pub price: i64,
}

/// A row: its seats' indices and numbers, sorted by number.
#[derive(Debug, Clone)]
pub struct Row {
    /// Row label.
    pub label: String,
    /// Seat indices, by number.
    pub seats: Vec<u32>,
    /// Their numbers, rising.
    pub numbers: Vec<i32>,
    /// The row's focal point: the middle of its lowest and highest number.
    pub centre: f64,
}

/// A section of one grade and price.
#[derive(Debug, Clone)]
pub struct Section {
    /// Section name.
    pub name: String,
    /// Price grade.
    pub grade: String,
    /// Price in KRW.
    pub price: i64,
    /// Rows in listed order (front to back).
    pub rows: Vec<Row>,
}

/// Where each seat is: sections and rows in listed order, and seat ids by
/// index.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Performance id.
    pub performance_id: i64,
    /// Seat ids by index (rising).
    pub ids: Vec<i64>,
    /// Sections in listed order.
    pub sections: Vec<Section>,
    /// Per index: (section, row, number).
    places: Vec<(u32, u32, i32)>,
}

impl Layout {
    /// The layout of `seats` (sorted by id). Sections (a name, grade and
    /// price) and their rows come in the order their first seat was
    /// created, which is the order the concert listed them.
    pub fn new(performance_id: i64, mut seats: Vec<SeatRow>) -> Self {
        seats.sort_by_key(|s| s.id);
        let mut sections: Vec<Section> = Vec::new();
        let mut section_of: HashMap<(String, String, i64), u32> = HashMap::new();
        let mut row_of: HashMap<(u32, String), u32> = HashMap::new();
        let mut places = Vec::with_capacity(seats.len());
        let mut members: Vec<Vec<Vec<(i32, u32)>>> = Vec::new();
        for (index, seat) in seats.iter().enumerate() {
            let key = (seat.section.clone(), seat.grade.clone(), seat.price);
            let s = *section_of.entry(key).or_insert_with(|| {
                sections.push(Section {
                    name: seat.section.clone(),
                    grade: seat.grade.clone(),
                    price: seat.price,
                    rows: Vec::new(),
                });
                members.push(Vec::new());
                sections.len() as u32 - 1
            });
            let r = *row_of.entry((s, seat.row.clone())).or_insert_with(|| {
                let rows = &mut sections[s as usize].rows;
                rows.push(Row {
                    label: seat.row.clone(),
                    seats: Vec::new(),
                    numbers: Vec::new(),
                    centre: 0.0,
                });
                members[s as usize].push(Vec::new());
                rows.len() as u32 - 1
            });
            members[s as usize][r as usize].push((seat.number, index as u32));
            places.push((s, r, seat.number));
        }
        for (section, rows) in sections.iter_mut().zip(members) {
            for (row, mut seats) in section.rows.iter_mut().zip(rows) {
                seats.sort_unstable();
                row.numbers = seats.iter().map(|(n, _)| *n).collect();
                row.seats = seats.iter().map(|(_, i)| *i).collect();
                let (low, high) = (row.numbers[0], row.numbers[row.numbers.len() - 1]);
                row.centre = (f64::from(low) + f64::from(high)) / 2.0;
            }
        }
        Self {
            performance_id,
            ids: seats.iter().map(|s| s.id).collect(),
            sections,
            places,
        }
    }

    /// Seats in the performance.
    pub fn len(&self) -> u32 {
        self.ids.len() as u32
    }

    /// Whether the performance has no seat.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The index of seat `id`, if it belongs to the performance.
    pub fn index_of(&self, id: i64) -> Option<u32> {
        self.ids.binary_search(&id).ok().map(|i| i as u32)
    }

    /// The id of seat `index`.
    pub fn id_of(&self, index: u32) -> i64 {
        self.ids[index as usize]
    }

    /// The layout body: runs of consecutive ids, numbers and indices.
    pub fn body(&self) -> SeatLayout {
        let sections = self
            .sections
            .iter()
            .map(|section| LayoutSection {
                section: section.name.clone(),
                grade: section.grade.clone(),
                price: section.price,
                rows: section
                    .rows
                    .iter()
                    .map(|row| LayoutRow {
                        row: row.label.clone(),
                        runs: self.runs(row),
                    })
                    .collect(),
            })
            .collect();
        SeatLayout {
            performance_id: self.performance_id,
            seats_total: self.len(),
            sections,
        }
    }

    fn runs(&self, row: &Row) -> Vec<SeatRun> {
        let mut runs: Vec<SeatRun> = Vec::new();
        for (&index, &number) in row.seats.iter().zip(&row.numbers) {
            let id = self.id_of(index);
            match runs.last_mut() {
                Some(run)
                    if i64::from(run.count) == id - run.first_id
                        && run.first_number + run.count as i32 == number
                        && run.first_index + run.count == index =>
                {
                    run.count += 1;
                }
                _ => runs.push(SeatRun {
                    first_id: id,
                    first_number: number,
                    first_index: index,
                    count: 1,
                }),
            }
        }
        runs
    }

    /// The legacy full seat map: every seat by id with its availability in
    /// `free`.
    pub fn seat_map(&self, free: &Bitmap) -> SeatMap {
        let seats = self
            .places
            .iter()
            .enumerate()
            .map(|(index, &(s, r, number))| {
                let section = &self.sections[s as usize];
                Seat {
                    id: self.ids[index],
                    section: section.name.clone(),
                    row: section.rows[r as usize].label.clone(),
                    number,
                    grade: section.grade.clone(),
                    price: section.price,
                    available: free.get(index as u32),
                }
            })
            .collect();
        SeatMap {
            performance_id: self.performance_id,
            seats_available: i64::from(free.count()),
            seats,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Seats of sections `(name, rows, seats per row)`, created in order
    /// (ids from 1), as the store would list them.
    pub(crate) fn venue(sections: &[(&str, u32, i32)]) -> Vec<SeatRow> {
        let mut seats = Vec::new();
        for (name, rows, per_row) in sections {
            for row in 1..=*rows {
                for number in 1..=*per_row {
                    seats.push(SeatRow {
                        id: seats.len() as i64 + 1,
                        section: (*name).into(),
                        row: row.to_string(),
                        number,
                        grade: format!("G{name}"),
                        price: 1_000,
                    });
                }
            }
        }
        seats
    }

    #[test]
    fn sections_and_rows_keep_their_listed_order_and_rows_compress_to_runs() {
        let layout = Layout::new(9, venue(&[("B", 2, 3), ("A", 1, 4)]));
        let names: Vec<_> = layout.sections.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["B", "A"]);
        let body = layout.body();
        assert_eq!(body.seats_total, 10);
        let row = &body.sections[1].rows[0];
        assert_eq!(row.runs.len(), 1);
        assert_eq!(
            (
                row.runs[0].first_id,
                row.runs[0].first_index,
                row.runs[0].count
            ),
            (7, 6, 4)
        );
        assert_eq!(layout.sections[0].rows[1].centre, 2.0);
    }

    #[test]
    fn a_gap_in_ids_starts_a_new_run_and_the_legacy_map_lists_every_seat() {
        let mut seats = venue(&[("A", 1, 4)]);
        seats[2].id = 40;
        seats[3].id = 41;
        let layout = Layout::new(1, seats);
        assert_eq!(layout.body().sections[0].rows[0].runs.len(), 2);
        let mut free = Bitmap::empty(4);
        free.set(3);
        let map = layout.seat_map(&free);
        assert_eq!(map.seats_available, 1);
        assert!(map.seats[3].available && map.seats[3].id == 41);
        assert_eq!(layout.index_of(40), Some(2));
        assert_eq!(layout.index_of(5), None);
    }
}
